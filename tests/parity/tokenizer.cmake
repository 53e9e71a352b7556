# Tokenizer parity with HF tokenizers: ids (add_special_tokens False/True), byte offsets and decode on a
# generated multilingual corpus, for every shared tokenizer.json and layout variants of them.
hs_pytest(tokenizer_parity SCRIPT ${CMAKE_CURRENT_LIST_DIR}/tokenizer_parity.py LABELS tokenizer TIMEOUT 900)
# The committed Unicode tables are what data_tools/gen_unicode_tables.py makes, and they agree with HF
# tokenizers' regex classes and NFC on every code point (skips without unicodedata2==16.0.0).
hs_pytest(tokenizer_unicode_tables SCRIPT ${CMAKE_SOURCE_DIR}/data_tools/gen_unicode_tables.py ARGS --check --verify
          LABELS tokenizer TIMEOUT 900)
