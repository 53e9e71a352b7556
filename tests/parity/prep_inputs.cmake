# hsloth prep on input formats and template marker checks (issue #10): tool data against transformers'
# apply_chat_template(tools=...), refusals by name (DPO, OASST trees), single-object files, split markers.
hs_pytest(prep_inputs SCRIPT ${CMAKE_CURRENT_LIST_DIR}/prep_inputs.py LABELS data TIMEOUT 300)
