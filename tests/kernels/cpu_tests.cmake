# CPU backend tests (included from tests/kernels/CMakeLists.txt): every
# instruction-set path against the float64 reference, and the thread pool's
# invariance and thread safety. GoogleTest based; label unit.
if(GTest_FOUND)
  foreach(test_name IN ITEMS cpu_isa_test cpu_threading_test)
    add_executable(kernels_${test_name} ${CMAKE_CURRENT_LIST_DIR}/${test_name}.cc)
    target_link_libraries(kernels_${test_name} PRIVATE normserve::kernel_testing GTest::gtest GTest::gtest_main)
    add_test(NAME kernels_${test_name} COMMAND kernels_${test_name})
    set_tests_properties(kernels_${test_name} PROPERTIES LABELS "unit" TIMEOUT 120)
  endforeach()
endif()
