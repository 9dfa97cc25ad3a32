# Test-only stand-in for a codait/max-* model image, which cannot be pulled here. It is laid out
# as those images are: the app in WORKDIR /workspace (app.py, api/, core/, config.py, assets/),
# EXPOSE 5000, CMD python app.py. Build context (made by tests/test_build.py):
#   ca-bundle.crt      the host's CA bundle (PyPI is reached through a TLS-intercepting proxy)
#   requirements.txt   the model's requirements
#   app/               the model's directory
# Target `max-image` is the usual image; `max-image-nonroot` adds what some MAX images have and
# the action image must cope with: a non-root USER and an ENTRYPOINT that starts the model server.
ARG python_image=local/bookworm-python:1

FROM ${python_image} AS max-image
COPY ca-bundle.crt /etc/ssl/certs/host-ca-bundle.crt
ENV PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt \
    SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Shared by every model image: one cached layer with the framework and its web stack.
RUN pip install --no-compile maxfw==1.1.6
COPY requirements.txt /tmp/model-requirements.txt
RUN pip install --no-compile -r /tmp/model-requirements.txt
WORKDIR /workspace
COPY app/ /workspace/
EXPOSE 5000
CMD ["python", "app.py"]

FROM max-image AS max-image-nonroot
RUN useradd --system --uid 1001 --no-create-home --shell /usr/sbin/nologin max
USER 1001
ENTRYPOINT ["python", "app.py"]
CMD []
