hs_pytest(first_day SCRIPT ${CMAKE_CURRENT_LIST_DIR}/first_day.py LABELS cli TIMEOUT 600)
