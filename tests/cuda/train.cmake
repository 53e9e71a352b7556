# GPU training against HF transformers + PEFT, and NCCL data parallel on 2+ GPUs (label cuda; skip without).
hs_pytest(train_gpu SCRIPT ${CMAKE_CURRENT_LIST_DIR}/train_gpu.py ARGS ${CMAKE_BINARY_DIR}/hsloth LABELS cuda TIMEOUT 1200)
hs_pytest(dist_gpu SCRIPT ${CMAKE_CURRENT_LIST_DIR}/dist_gpu.py ARGS ${CMAKE_BINARY_DIR}/hsloth LABELS "cuda;mpi" TIMEOUT 1800)
