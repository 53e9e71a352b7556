# Shards from `hsloth prep` read with h5py and checked against HF transformers/tokenizers (ids, decoded
# text, loss masks), h5dump, and `hsloth inspect --json` against statistics computed in Python.
hs_pytest(shards_parity SCRIPT ${CMAKE_CURRENT_LIST_DIR}/shards_parity.py LABELS data TIMEOUT 900)
