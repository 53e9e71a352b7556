hs_pytest(cli_contract SCRIPT ${CMAKE_CURRENT_LIST_DIR}/test_cli.py LABELS cli TIMEOUT 300)
