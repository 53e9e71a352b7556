# model/runtime: the one resolver of --device/--dtype words and the device table (peak FLOP/s, peak memory).
hs_gtest(test_runtime SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_runtime.cpp LIBS hs_model)
hs_torch_target(test_runtime)
