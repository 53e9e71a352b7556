# Shard format (src/data): writer/reader round trip, determinism, validation of damaged files.
hs_gtest(test_data_shards SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_data_shards.cpp LIBS hs_data HDF5::HDF5)
# Input readers (JSON/JSONL, gzip), formats, UTF-8 policy (data_tools): no tokenizer needed.
hs_gtest(test_data_inputs SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_data_inputs.cpp LIBS hs_data_tools ZLIB::ZLIB)
# Prep record policies and loss masks with a byte tokenizer and the real chat templates.
hs_gtest(test_prep_policies SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_prep_policies.cpp LIBS hs_data_tools)
# hsloth prep / inspect end to end through the binary: exit codes, messages, manifest accounting.
hs_gtest(test_prep_cli SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_prep_cli.cpp LIBS hs_data)
