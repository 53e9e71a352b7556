# Chat templates against HF `apply_chat_template` (transformers as the oracle, run at test time).
# render_template_main renders JSON requests with our ChatTemplate; chat_template_parity.py builds the
# conversations, renders them with transformers and compares text and trainable spans byte for byte.
# chat_template.cpp is compiled in directly (it needs only hs_core and hs_io's JSON reader), so these tests
# build and run while the rest of hs_tokenizer is under construction.
add_executable(render_template_main ${CMAKE_CURRENT_LIST_DIR}/render_template_main.cpp
                                    ${CMAKE_SOURCE_DIR}/src/tokenizer/chat_template.cpp)
target_link_libraries(render_template_main PRIVATE hs_core hs_io nlohmann_json::nlohmann_json)
target_include_directories(render_template_main PRIVATE ${HS_INCLUDE_ROOTS})
target_compile_options(render_template_main PRIVATE ${HS_WARNINGS})
hs_pytest(chat_template_parity SCRIPT ${CMAKE_CURRENT_LIST_DIR}/chat_template_parity.py
          ARGS $<TARGET_FILE:render_template_main> LABELS tokenizer TIMEOUT 600)
