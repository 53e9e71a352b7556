# Training run safety in one process (issue #10): Ctrl-C checkpoints (a second one aborts), errors after step 1
# save the last completed step, resume = auto never overwrites a finished run, a full disk leaves no temp
# folder, metrics.jsonl has every step once after a resume, warmup/max_steps and max_position_embeddings checks.
hs_pytest(train_safety SCRIPT ${CMAKE_CURRENT_LIST_DIR}/train_safety.py LABELS train TIMEOUT 600)
