/* cuda_dnn.c: the "conv" library call through cuDNN. */
#ifndef FLAGOS_CUDA_DNN_H
#define FLAGOS_CUDA_DNN_H

#include "cuda_internal.h"

/* The "conv" call (docs/kernel-ir.md); FLAGOS_ERR_UNSUPPORTED where cuDNN is
 * absent or off, there is no device, or the shape is left to the kernels. */
flagos_status_t cuda_dnn_conv(cuda_state_t *s, flagos_bstream_t stream, const flagos_libcall_t *call);
/* Before the contexts go: frees descriptors, workspaces and handles. */
void cuda_dnn_shutdown(cuda_state_t *s);

#endif
