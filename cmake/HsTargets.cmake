# Target helpers: one static library per src/ folder (sources globbed, so adding a file needs no CMake
# edit), a single LibTorch precompiled header shared by every target that includes LibTorch, and test
# registration (GoogleTest, MPI under mpiexec, Python parity scripts against HF oracles).

set(HS_INCLUDE_ROOTS ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR})

# The PyPI LibTorch exports its own copy of std::filesystem (built against a newer libstdc++). Listed
# before libstdc++ among an executable's needed libraries, it wins symbol lookup, and some of its functions
# jump to null on Debian 12 (std::filesystem::remove_all segfaulted). Putting libstdc++ first in every
# executable's DT_NEEDED makes the system library win for everyone, LibTorch included.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND NOT APPLE)
  add_link_options("LINKER:--push-state,--no-as-needed,-lstdc++,--pop-state")
endif()

if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(HS_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
endif()

# The LibTorch PCH is compiled once (into hs_torch_pch) and reused by every torch target.
if(Torch_FOUND AND NOT TARGET hs_torch_pch)
  add_library(hs_torch_pch STATIC ${CMAKE_SOURCE_DIR}/src/core/pch/torch_pch.cpp)
  target_include_directories(hs_torch_pch PUBLIC ${HS_INCLUDE_ROOTS})
  target_link_libraries(hs_torch_pch PUBLIC ${TORCH_LIBRARIES})
  target_compile_options(hs_torch_pch PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${HS_WARNINGS}>)
  if(HS_PCH)
    target_precompile_headers(hs_torch_pch PRIVATE ${CMAKE_SOURCE_DIR}/src/core/pch/torch_pch.h)
  endif()
endif()

# hs_torch_target(tgt): link LibTorch and reuse the shared precompiled header.
function(hs_torch_target tgt)
  target_link_libraries(${tgt} PUBLIC hs_torch_pch)
  if(HS_PCH)
    target_precompile_headers(${tgt} REUSE_FROM hs_torch_pch)
  endif()
endfunction()

# hs_library(name DIR dir [TORCH] [LIBS ...] [FILES f ...] [EXCLUDE f ...]): a static library from
# dir/*.cpp, or from the FILES of dir only, less the EXCLUDE ones (a folder split into two libraries:
# model/names.cpp is torch-free, the rest of model/ is not); an INTERFACE target while it has no sources
# yet, so dependents can link it already.
function(hs_library name)
  cmake_parse_arguments(A "TORCH" "DIR" "LIBS;FILES;EXCLUDE" ${ARGN})
  if(A_FILES)
    set(_src "")
    foreach(_f ${A_FILES})
      get_filename_component(_abs ${A_DIR}/${_f} ABSOLUTE)
      list(APPEND _src ${_abs})
    endforeach()
  else()
    file(GLOB _src CONFIGURE_DEPENDS ${A_DIR}/*.cpp)
  endif()
  foreach(_f ${A_EXCLUDE})
    get_filename_component(_abs ${A_DIR}/${_f} ABSOLUTE)
    list(REMOVE_ITEM _src ${_abs})
  endforeach()
  if(_src)
    add_library(${name} STATIC ${_src})
    target_include_directories(${name} PUBLIC ${HS_INCLUDE_ROOTS})
    target_link_libraries(${name} PUBLIC ${A_LIBS})
    target_compile_options(${name} PRIVATE ${HS_WARNINGS})
    if(A_TORCH)
      hs_torch_target(${name})
    endif()
  else()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${HS_INCLUDE_ROOTS})
    target_link_libraries(${name} INTERFACE ${A_LIBS})
  endif()
endfunction()

# hs_forbid_links(target item...): configure-time error when `target` links any `item`, directly or through
# the libraries it links (the layering rules of DESIGN.md: the tokenizer and data never link NCCL or MPI, the
# model never links MPI).
function(hs_forbid_links target)
  set(_queue ${target})
  set(_seen "")
  while(_queue)
    list(POP_FRONT _queue _t)
    if(_t IN_LIST _seen OR NOT TARGET ${_t})
      continue()
    endif()
    list(APPEND _seen ${_t})
    get_target_property(_type ${_t} TYPE)
    set(_deps "")
    if(NOT _type STREQUAL "INTERFACE_LIBRARY")
      get_target_property(_l ${_t} LINK_LIBRARIES)
      if(_l)
        list(APPEND _deps ${_l})
      endif()
    endif()
    get_target_property(_il ${_t} INTERFACE_LINK_LIBRARIES)
    if(_il)
      list(APPEND _deps ${_il})
    endif()
    foreach(_d ${_deps})
      foreach(_bad ${ARGN})
        if(_d STREQUAL _bad)
          message(FATAL_ERROR "${target} must not link ${_bad} (it does through ${_t}); see ../shared/DESIGN.md")
        endif()
      endforeach()
      list(APPEND _queue ${_d})
    endforeach()
  endwhile()
endfunction()

# ---- tests ----------------------------------------------------------------------------------------
# Shared test data (../shared/data or $HSLOTH_TESTDATA); tests skip with a message when it is absent.
if(DEFINED ENV{HSLOTH_TESTDATA})
  set(HS_TESTDATA $ENV{HSLOTH_TESTDATA})
else()
  get_filename_component(HS_TESTDATA ${CMAKE_SOURCE_DIR}/../shared/data ABSOLUTE)
endif()
set(HS_TEST_ENV
    "HSLOTH_TESTDATA=${HS_TESTDATA}"
    "HSLOTH_BIN=${CMAKE_BINARY_DIR}/hsloth"
    "HSLOTH_SOURCE=${CMAKE_SOURCE_DIR}"
    "HSLOTH_PYTHON=${HS_PYTHON}"
    "OMPI_ALLOW_RUN_AS_ROOT=1" "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
    "OMPI_MCA_rmaps_base_oversubscribe=1"
    "TOKENIZERS_PARALLELISM=false" "HF_HUB_OFFLINE=1" "TRANSFORMERS_OFFLINE=1"
    # ctest runs tests side by side on few cores: one OpenMP thread each, or they spin against each other.
    "OMP_NUM_THREADS=1" "MKL_NUM_THREADS=1")

# hs_gtest(name SOURCES ... [LIBS ...] [LABELS ...] [MPI n1 n2 ...] [TIMEOUT s])
#   Without MPI: each TEST() becomes its own CTest test (discovered when the tests run).
#   With MPI: the whole executable runs under `mpiexec -n N` once per N, as test `name.npN`.
function(hs_gtest name)
  cmake_parse_arguments(A "" "TIMEOUT" "SOURCES;LIBS;LABELS;MPI" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 600)
  endif()
  add_executable(${name} ${A_SOURCES})
  target_link_libraries(${name} PRIVATE ${A_LIBS} hs_test_support GTest::gtest)
  if(A_MPI)
    target_link_libraries(${name} PRIVATE hs_mpi_test_main)
  else()
    target_link_libraries(${name} PRIVATE GTest::gtest_main)
  endif()
  target_compile_options(${name} PRIVATE ${HS_WARNINGS})
  if(A_MPI)
    foreach(n ${A_MPI})
      add_test(NAME ${name}.np${n}
               COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${n} --oversubscribe
                       ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${name}> ${MPIEXEC_POSTFLAGS})
      set_tests_properties(${name}.np${n} PROPERTIES ENVIRONMENT "${HS_TEST_ENV}" TIMEOUT ${A_TIMEOUT}
                           LABELS "mpi;${A_LABELS}" PROCESSORS ${n} SKIP_RETURN_CODE 77)
    endforeach()
  else()
    include(GoogleTest)
    # Every discovered test runs under `cmake -E env HS_TEST_ENV...`: gtest_discover_tests writes a list-valued
    # ENVIRONMENT property as separate arguments (CMake 3.25), so only its first variable reached the tests;
    # the executor (the target's CROSSCOMPILING_EMULATOR, which the module prepends to each test's command) is
    # expanded as a command line, each variable its own argument.
    set_property(TARGET ${name} PROPERTY CROSSCOMPILING_EMULATOR ${CMAKE_COMMAND} -E env ${HS_TEST_ENV})
    gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST PROPERTIES TIMEOUT ${A_TIMEOUT} LABELS "${A_LABELS}")
  endif()
endfunction()

# hs_pytest(name SCRIPT file [ARGS ...] [LABELS ...] [TIMEOUT s]): a Python script that compares our
# binary with an independent oracle (transformers, peft, tokenizers). Exit 77 = skipped (oracle or data
# missing), which CTest reports as skipped.
function(hs_pytest name)
  cmake_parse_arguments(A "" "SCRIPT;TIMEOUT" "ARGS;LABELS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 900)
  endif()
  add_test(NAME ${name} COMMAND ${HS_PYTHON} ${A_SCRIPT} ${A_ARGS} WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${HS_TEST_ENV}" TIMEOUT ${A_TIMEOUT}
                       LABELS "parity;${A_LABELS}" SKIP_RETURN_CODE 77 DEPENDS hsloth)
endfunction()
