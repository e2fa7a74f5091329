# CUDA backend tests: plain executables (the GPU machine has no GoogleTest)
# on the parity harness. They exit 77 where there is no GPU, which CTest
# reports as skipped. cuda_factory_test checks the no-GPU / no-CUDA errors
# and runs everywhere.
add_executable(kernels_cuda_factory_test ${CMAKE_CURRENT_LIST_DIR}/cuda_factory_test.cc)
target_link_libraries(kernels_cuda_factory_test PRIVATE normserve::kernels)
add_test(NAME kernels_cuda_factory_test COMMAND kernels_cuda_factory_test)
set_tests_properties(kernels_cuda_factory_test PROPERTIES LABELS "unit" TIMEOUT 60)

set(normserve_cuda_gpu_tests kernels_cuda_parity_test kernels_cuda_batch_test)
if(NORMSERVE_HAVE_CUDA)
  list(APPEND normserve_cuda_gpu_tests kernels_cuda_device_test)
endif()
foreach(test_name IN LISTS normserve_cuda_gpu_tests)
  string(REGEX REPLACE "^kernels_" "" source_name ${test_name})
  add_executable(${test_name} ${CMAKE_CURRENT_LIST_DIR}/${source_name}.cc)
  target_link_libraries(${test_name} PRIVATE normserve::kernel_testing)
  add_test(NAME ${test_name} COMMAND ${test_name})
  set_tests_properties(${test_name} PROPERTIES LABELS "gpu" SKIP_RETURN_CODE 77 TIMEOUT 300)
endforeach()
if(NORMSERVE_HAVE_CUDA)
  # The device test calls the internal launchers directly (cudart comes with
  # normserve::kernels).
  target_include_directories(kernels_cuda_device_test PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../../kernels/cuda)
endif()
