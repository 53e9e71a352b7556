# bench/write_nf4_folder.py (random weights written directly as a pre-quantized bitsandbytes NF4 folder, for the 70B
# QLoRA benchmark) against transformers + bitsandbytes on the CPU: layout, Linear4bit load, hsloth eval and a
# finetune = qlora run on it, and bench/qlora_70b.py --dry-run. Skipped (77) without bitsandbytes.
hs_pytest(nf4_folder SCRIPT ${CMAKE_CURRENT_LIST_DIR}/nf4_folder.py LABELS "train;model" TIMEOUT 300)
