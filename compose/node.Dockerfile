# The one smtp-lab node image: `python3 -m lab.nodes <role> <config.json>`.
#
# Built by `smtplab image build` (lab/runtime/image/), which assembles the
# context: this file, pip/ (pip's own wheel), deps/ (wheels of every runtime
# dependency, for the image's platform) and project/ (the project's wheel).
# Nothing is fetched from an index here: the offline base has no network at
# build time.
#
#   BASE          smtplab-base:<key> (debootstrap rootfs, `docker import`ed) or python:3.11-slim
#   APT_PACKAGES  what BASE lacks; empty for the debootstrap base, which has them already
#   PIP_WHEEL     file name of pip's wheel in pip/ (Debian's python3 ships without pip)
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG APT_PACKAGES="iproute2 iptables tcpdump"
ARG PIP_WHEEL

RUN if [ -n "$APT_PACKAGES" ]; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $APT_PACKAGES \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# pip runs straight from its wheel and is never installed: nodes do not need it.
# --break-system-packages: Debian's python3 is "externally managed" (PEP 668); this image
# is ours alone, so installing into it is what we want.
# Dependencies first, in a layer of their own: a change to the project's sources then
# rebuilds only the last two steps.
COPY pip/ /tmp/pip/
COPY deps/ /tmp/deps/
RUN python3 "/tmp/pip/$PIP_WHEEL/pip" install --no-index --no-deps --no-cache-dir \
        --disable-pip-version-check --root-user-action=ignore --break-system-packages \
        /tmp/deps/*.whl \
    && rm -rf /tmp/deps
COPY project/ /tmp/project/
# `pip check` proves the dependency layer satisfies the project's requirements.
RUN python3 "/tmp/pip/$PIP_WHEEL/pip" install --no-index --no-deps --no-cache-dir \
        --disable-pip-version-check --root-user-action=ignore --break-system-packages \
        /tmp/project/*.whl \
    && python3 "/tmp/pip/$PIP_WHEEL/pip" check --disable-pip-version-check \
    && rm -rf /tmp/project /tmp/pip

ENV PYTHONUNBUFFERED=1
WORKDIR /var/lib/smtplab
CMD ["python3", "-m", "lab.nodes"]
