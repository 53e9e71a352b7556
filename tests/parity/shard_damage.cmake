# Damaged shards stop train and eval at start-up, naming the file (issue #10): a tiny random Llama
# (transformers) and the demo data; h5py places the damage inside a token chunk.
hs_pytest(shard_damage SCRIPT ${CMAKE_CURRENT_LIST_DIR}/shard_damage.py LABELS "data;train" TIMEOUT 300)
