/* backend/dispatch.h - how an op picks its implementation.
 *
 * Each op's public function lives in a .c file next to its plain-C
 * reference and starts with DS_DISPATCH_CUDA(be, cuda_twin(...)): on a CUDA
 * backend the twin (in the matching .cu file) runs instead. In a build
 * without CUDA the macro expands to nothing. */
#ifndef DS_BACKEND_DISPATCH_H
#define DS_BACKEND_DISPATCH_H

#include "backend.h"

#ifdef DS_HAVE_CUDA
#define DS_DISPATCH_CUDA(be, call)          \
    do {                                    \
        if ((be)->kind == BE_CUDA) {        \
            if (!(be)->err) call;           \
            return;                         \
        }                                   \
    } while (0)
#else
#define DS_DISPATCH_CUDA(be, call) \
    do {                           \
    } while (0)
#endif

#endif
