# The decoder in bf16 on the GPU against transformers on the same GPU (Llama-3.2-1B and Qwen3-0.6B shapes,
# random weights). Label cuda; the script exits 77 (skipped) without a CUDA device. Run on the GPU machine
# with tests/cuda/gpu_parity.sh.
hs_pytest(model_gpu SCRIPT ${CMAKE_CURRENT_LIST_DIR}/model_gpu.py ARGS $<TARGET_FILE:model_probe>
          LABELS cuda model TIMEOUT 1800)
