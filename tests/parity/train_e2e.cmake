hs_pytest(train_e2e SCRIPT ${CMAKE_CURRENT_LIST_DIR}/train_e2e.py LABELS train TIMEOUT 900)
