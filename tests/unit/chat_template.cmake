# Chat template edge cases and errors (no oracle needed): role rules, empty conversations, auto detection,
# custom templates, Python whitespace semantics, span bookkeeping. chat_template.cpp is compiled in directly
# (it needs only hs_core) so the test does not wait on the rest of hs_tokenizer.
hs_gtest(test_chat_template
         SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_chat_template.cpp ${CMAKE_SOURCE_DIR}/src/tokenizer/chat_template.cpp
         LIBS hs_io hs_core LABELS tokenizer)
