#include "normserve/kernels/problem.h"
