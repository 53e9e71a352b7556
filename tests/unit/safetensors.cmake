# safetensors reader/writer and config.json (torch-free; src/io).
hs_gtest(test_safetensors SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_safetensors.cpp LIBS hs_io)
