# Kernel contract tests: conversions, validation, the float64 reference, the
# parity harness, and the CPU backend's parity with the reference. GoogleTest
# based, so only when GoogleTest is found (kernels/ alone may lack it).
if(GTest_FOUND)
  set(normserve_reference_tests
    kernels_convert_test
    kernels_validate_test
    kernels_reference_test
    kernels_harness_test
    kernels_edge_cases_test
  )
  # The CPU parity test needs the CPU backend in normserve_kernels.
  get_target_property(normserve_kernel_sources normserve_kernels SOURCES)
  if("${normserve_kernel_sources}" MATCHES "cpu_backend\\.cc")
    list(APPEND normserve_reference_tests kernels_cpu_parity_test)
  else()
    message(STATUS "normserve: no CPU backend sources; kernels_cpu_parity_test not built")
  endif()

  foreach(test_name IN LISTS normserve_reference_tests)
    string(REGEX REPLACE "^kernels_" "" source_name ${test_name})
    add_executable(${test_name} ${CMAKE_CURRENT_LIST_DIR}/${source_name}.cc)
    target_link_libraries(${test_name} PRIVATE normserve::kernel_testing GTest::gtest GTest::gtest_main)
    add_test(NAME ${test_name} COMMAND ${test_name})
    set_tests_properties(${test_name} PROPERTIES LABELS "unit" TIMEOUT 120)
  endforeach()
  # The CPU parity test again on the lower instruction sets (the backend
  # takes NORMSERVE_CPU_ISA as a ceiling; on a CPU without AVX-512 the avx2
  # run repeats the default one).
  if(TARGET kernels_cpu_parity_test)
    foreach(isa scalar avx2)
      add_test(NAME kernels_cpu_parity_test_${isa} COMMAND kernels_cpu_parity_test)
      set_tests_properties(kernels_cpu_parity_test_${isa} PROPERTIES LABELS "unit" TIMEOUT 120
                           ENVIRONMENT "NORMSERVE_CPU_ISA=${isa}")
    endforeach()
  endif()
  # The reference's private rounding header (round_from_double.h).
  target_include_directories(kernels_convert_test PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../../kernels/reference)
endif()
