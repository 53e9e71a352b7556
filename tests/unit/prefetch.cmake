# train::Prefetcher (issue #12): the next micro-batch collated on one background thread -- order, one load at
# a time, errors rethrown by take() on the caller, background off for HS_SYNC_INPUTS=1.
hs_gtest(test_prefetch SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_prefetch.cpp LIBS hs_train LABELS train)
hs_torch_target(test_prefetch)
