# Turns an IBM MAX model image into an Apache OpenWhisk Docker action:
#
#   docker build --build-arg model=max-facial-emotion-classifier -t me/max-facial-emotion-classifier:1 .
#
# build.sh runs this for each model, with a pinned tag and the label arguments filled in.
ARG model
ARG base_image=codait/${model}:latest

FROM ${base_image}

ARG model
ARG base_image
ARG version=unknown
ARG created=unknown
ARG revision=unknown

LABEL org.opencontainers.image.title="${model}" \
      org.opencontainers.image.description="IBM MAX model ${model} as an Apache OpenWhisk Docker action (web action, port 8080)" \
      org.opencontainers.image.version="${version}" \
      org.opencontainers.image.created="${created}" \
      org.opencontainers.image.revision="${revision}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${base_image}"

# The shim must sit beside the model's app.py, in the working directory the base image already
# sets, so the destination is deliberately relative. It stays owned by root and world-readable,
# which every image user can run and none can modify.
# hadolint ignore=DL3045
COPY openwhisk.py ./
# hadolint ignore=DL3045
COPY serverless_max ./serverless_max/

# Some MAX images start their own server through an ENTRYPOINT; the action must start the shim.
ENTRYPOINT []
# Exec form: the shim is PID 1 and receives the SIGTERM the invoker sends.
CMD ["python", "openwhisk.py"]
EXPOSE 8080
