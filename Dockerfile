# Turns an IBM MAX model image into one serverless image for Apache OpenWhisk, Knative, Google
# Cloud Run, IBM Code Engine and AWS Lambda (the runtime picks the platform from the environment):
#
#   docker build --build-arg model=max-facial-emotion-classifier -t me/max-facial-emotion-classifier:1 .
#
# build.sh runs this for each model, with a pinned tag and the label arguments filled in.
ARG model
ARG base_image=quay.io/codait/${model}:latest

FROM ${base_image}

ARG model
ARG base_image
ARG version=unknown
ARG created=unknown
ARG revision=unknown

LABEL org.opencontainers.image.title="${model}" \
      org.opencontainers.image.description="IBM MAX model ${model}, serving its own API on Apache OpenWhisk (web action), Knative, Google Cloud Run, IBM Code Engine and AWS Lambda (port 8080)" \
      org.opencontainers.image.version="${version}" \
      org.opencontainers.image.created="${created}" \
      org.opencontainers.image.revision="${revision}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${base_image}"

# The runtime must sit beside the model's app.py, in the working directory the base image already
# sets, so the destinations are deliberately relative. It stays owned by root and world-readable,
# which every image user can run and none can modify.
# hadolint ignore=DL3045
COPY openwhisk.py ./
# hadolint ignore=DL3045
COPY serverless_max/ ./serverless_max/

# The model's own output reaches the platform's logs as it is written, not when a buffer fills.
ENV PYTHONUNBUFFERED=1

# Some MAX images start their own server through an ENTRYPOINT; the image must start the runtime.
ENTRYPOINT []
# Exec form: the runtime is PID 1 and receives the platform's SIGTERM.
CMD ["python", "openwhisk.py"]
EXPOSE 8080
