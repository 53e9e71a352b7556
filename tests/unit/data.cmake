# Shard format (src/data): writer/reader round trip, determinism, validation of damaged files.
hs_gtest(test_data_shards SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_data_shards.cpp LIBS hs_data HDF5::HDF5)
