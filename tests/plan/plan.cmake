# `hsloth plan` (src/plan): its arithmetic against the model's own tensors, the adapter, NF4 tensors and the
# optimizer state (test_plan), and the CLI: plan's report, errors, and train's refusal of a run that cannot fit
# with the override (plan_cli.py).
hs_gtest(test_plan SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_plan.cpp
         LIBS hs_plan hs_train hs_quant hs_lora hs_model hs_data hs_io)
hs_torch_target(test_plan)
hs_pytest(plan_cli SCRIPT ${CMAKE_CURRENT_LIST_DIR}/plan_cli.py TIMEOUT 300)
# ZeRO-1's sharded state (dist.shard_optimizer) against train::Zero1 under mpiexec -n 2.
hs_gtest(test_plan_zero1 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_plan_zero1.cpp
         LIBS hs_plan hs_train hs_model hs_dist hs_io MPI 2 TIMEOUT 120)
hs_torch_target(test_plan_zero1)
