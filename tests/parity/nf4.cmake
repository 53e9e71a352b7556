# NF4 (src/quant/nf4) against bitsandbytes 0.50.2 on the CPU: nf4_tool is the C++ side, nf4_bnb.py quantizes with
# bitsandbytes and transformers and compares bit for bit (skips when bitsandbytes is not importable).
add_executable(nf4_tool ${CMAKE_CURRENT_LIST_DIR}/nf4_tool.cpp)
target_link_libraries(nf4_tool PRIVATE hs_quant hs_model hs_io hs_core)
target_compile_options(nf4_tool PRIVATE ${HS_WARNINGS})
hs_torch_target(nf4_tool)
hs_pytest(nf4_bnb SCRIPT ${CMAKE_CURRENT_LIST_DIR}/nf4_bnb.py ARGS $<TARGET_FILE:nf4_tool> LABELS model TIMEOUT 300)
