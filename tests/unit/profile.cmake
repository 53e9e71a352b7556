# The step profile (issue #12): bench/profile_summary.py against a hand-made trace with known kernel intervals,
# and HSLOTH_PROFILE_STEP=N writing one step's Kineto trace on a tiny CPU run without changing any number.
hs_pytest(train_profile_summary SCRIPT ${CMAKE_CURRENT_LIST_DIR}/test_profile.py ARGS summary LABELS train
          TIMEOUT 120)
hs_pytest(train_profile_step SCRIPT ${CMAKE_CURRENT_LIST_DIR}/test_profile.py ARGS step LABELS train TIMEOUT 300)
