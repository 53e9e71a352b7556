# GPU training against HF transformers + PEFT (label cuda; skips without a GPU).
hs_pytest(train_gpu SCRIPT ${CMAKE_CURRENT_LIST_DIR}/train_gpu.py ARGS ${CMAKE_BINARY_DIR}/hsloth LABELS cuda TIMEOUT 1200)
