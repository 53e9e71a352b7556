# Trainer building blocks against independent oracles: LR schedules vs transformers, AdamW vs
# torch.optim.AdamW, TensorBoard files vs the tensorboard package's reader.
add_executable(train_probe ${CMAKE_CURRENT_LIST_DIR}/train_probe.cpp)
target_link_libraries(train_probe PRIVATE hs_train hs_io hs_core)
hs_torch_target(train_probe)
hs_pytest(train_parts_parity SCRIPT ${CMAKE_CURRENT_LIST_DIR}/train_parts_parity.py
          ARGS $<TARGET_FILE:train_probe> LABELS train TIMEOUT 300)
