# Typed train options: from_config() against the schema, and a tiny CPU training built from TrainOptions in
# code that must give the same adapter, bit for bit, as the same run through the config path.
hs_gtest(test_train_options SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_train_options.cpp
         LIBS hs_train hs_config hs_dist hs_data hs_lora hs_model hs_io)
hs_torch_target(test_train_options)
