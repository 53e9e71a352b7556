# The background prefetch of micro-batches (issue #12) against HS_SYNC_INPUTS=1's in-loop reads on a tiny CPU
# run: byte-identical adapters and metrics, and an injected data error reported at the same step.
hs_pytest(train_prefetch SCRIPT ${CMAKE_CURRENT_LIST_DIR}/train_prefetch.py LABELS train TIMEOUT 300)
