# Llama-family decoder + LoRA parity against transformers/PEFT (CPU, fp32). model_probe is the C++ side;
# model_parity.py builds random HF folders with transformers and compares logits, losses and gradients.
add_executable(model_probe ${CMAKE_CURRENT_LIST_DIR}/model_probe.cpp)
target_link_libraries(model_probe PRIVATE hs_lora hs_model hs_io hs_core)
target_compile_options(model_probe PRIVATE ${HS_WARNINGS})
hs_torch_target(model_probe)
hs_pytest(model_parity SCRIPT ${CMAKE_CURRENT_LIST_DIR}/model_parity.py ARGS $<TARGET_FILE:model_probe>
          LABELS model)
# hsloth merge / eval / generate against transformers + PEFT (needs the hsloth binary and the shared data).
hs_pytest(model_cli SCRIPT ${CMAKE_CURRENT_LIST_DIR}/model_cli.py LABELS model)
# The torch-free safetensors reader/writer against the `safetensors` package and transformers' sharding.
add_executable(model_st_tool ${CMAKE_CURRENT_LIST_DIR}/model_st_tool.cpp)
target_link_libraries(model_st_tool PRIVATE hs_io hs_core)
target_compile_options(model_st_tool PRIVATE ${HS_WARNINGS})
hs_pytest(model_safetensors SCRIPT ${CMAKE_CURRENT_LIST_DIR}/model_safetensors.py ARGS $<TARGET_FILE:model_st_tool>
          LABELS model)
