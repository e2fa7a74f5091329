# syntax=docker/dockerfile:1
# normserve container images, one per build target:
#
#   docker build --target cpu  -t normserve:0.1.0-cpu  .
#   docker build --target cuda -t normserve:0.1.0-cuda .
#   docker run --rm -p 50051:50051 -p 9464:9464 normserve:0.1.0-cpu
#   docker run --rm --gpus all -p 50051:50051 -p 9464:9464 normserve:0.1.0-cuda
#
# Both compile with scripts/build.sh, the script README and CI use, which
# installs its packages with scripts/setup.sh. The CPU image is Debian 12,
# like the development machines. The CUDA image builds on and runs from
# NVIDIA's Ubuntu 24.04 images, whose gRPC, protobuf and Abseil versions
# match Debian 12's. Each runtime stage installs exactly the packages that
# own the binaries' shared libraries (deploy/docker/runtime-packages.sh),
# found in a build stage of the same distribution. See docs/deploy.md.

ARG DEBIAN_IMAGE=debian:12-slim
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:12.6.3-devel-ubuntu24.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04
# Recorded in normserve_build_info and GetServerInfo; .git is not sent to
# the builder, so pass it: --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD)
ARG GIT_COMMIT=unknown

FROM ${DEBIAN_IMAGE} AS build-cpu
ARG GIT_COMMIT
WORKDIR /src
COPY . .
RUN NORMSERVE_SETUP_ARGS=--runtime-only NORMSERVE_BUILD_DIR=/build scripts/build.sh \
      -DNORMSERVE_ENABLE_CUDA=OFF -DNORMSERVE_BUILD_TESTS=OFF -DNORMSERVE_BUILD_BENCHMARKS=OFF \
      -DNORMSERVE_GIT_COMMIT="${GIT_COMMIT}" \
 && mkdir -p /out/bin \
 && cp /build/server/normserve /build/client/normserve-cli /out/bin/ \
 && deploy/docker/runtime-packages.sh /out/bin/* > /out/runtime-packages.txt

FROM ${CUDA_DEVEL_IMAGE} AS build-cuda
ARG GIT_COMMIT
# Hopper (sm_90) plus PTX for later GPUs, as cmake/NormserveCuda.cmake
# defaults; override with --build-arg CUDA_ARCHITECTURES="80;90".
ARG CUDA_ARCHITECTURES=90
WORKDIR /src
COPY . .
RUN NORMSERVE_SETUP_ARGS=--runtime-only NORMSERVE_BUILD_DIR=/build scripts/build.sh \
      -DNORMSERVE_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
      -DNORMSERVE_BUILD_TESTS=OFF -DNORMSERVE_BUILD_BENCHMARKS=OFF \
      -DNORMSERVE_GIT_COMMIT="${GIT_COMMIT}" \
 && mkdir -p /out/bin \
 && cp /build/server/normserve /build/client/normserve-cli /out/bin/ \
 && deploy/docker/runtime-packages.sh /out/bin/* > /out/runtime-packages.txt

FROM ${CUDA_RUNTIME_IMAGE} AS cuda
COPY --from=build-cuda /out/runtime-packages.txt /tmp/
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin normserve
COPY --from=build-cuda /out/bin/ /usr/local/bin/
# The NVIDIA container runtime mounts the driver (libcuda) for these.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["normserve-cli", "health", "--target=127.0.0.1:50051"]
ENTRYPOINT ["normserve"]
CMD ["--host=0.0.0.0", "--port=50051", "--metrics_port=9464", "--backend=auto"]

# Last, so that a plain `docker build .` gives the CPU image.
FROM ${DEBIAN_IMAGE} AS cpu
COPY --from=build-cpu /out/runtime-packages.txt /tmp/
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin normserve
COPY --from=build-cpu /out/bin/ /usr/local/bin/
# Numeric, so that Kubernetes can verify runAsNonRoot.
USER 10001
# gRPC, Prometheus /metrics.
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["normserve-cli", "health", "--target=127.0.0.1:50051"]
ENTRYPOINT ["normserve"]
CMD ["--host=0.0.0.0", "--port=50051", "--metrics_port=9464", "--backend=cpu"]
