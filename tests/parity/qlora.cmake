# QLoRA (LoRA on a 4-bit NF4 base) on CPU against transformers + PEFT + bitsandbytes: eval/generate with
# --quant nf4 and on a pre-quantized folder, a finetune = qlora run replayed per step, quantization_config
# errors, merge from a 4-bit base. Skipped (77) without bitsandbytes.
hs_pytest(qlora_parity SCRIPT ${CMAKE_CURRENT_LIST_DIR}/qlora_parity.py LABELS "train;model" TIMEOUT 900)
