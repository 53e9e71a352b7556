# The QLoRA base: Nf4Linear, the model's projection factory, the NF4 factory (quantize at load, pre-quantized
# folders) and quantization_config checks (CPU).
hs_gtest(test_nf4_linear SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_nf4_linear.cpp LIBS hs_quant hs_lora hs_model hs_io)
hs_torch_target(test_nf4_linear)
