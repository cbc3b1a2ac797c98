# glb in a container: DNS on 5353 (UDP and TCP), the HTTP front end on 8080, the admin API on
# 127.0.0.1:9100 inside the container (the HEALTHCHECK asks its /readyz).
# The image has no configuration built in: mount yours at /etc/glb/glb.yaml, and map the public
# DNS port at run time (the process runs unprivileged and cannot bind 53):
#   docker run -v $PWD/glb.yaml:/etc/glb/glb.yaml:ro -p 53:5353/udp -p 53:5353/tcp -p 8080:8080 glb
# The environment below sets the listen addresses (it overrides the file). To reach the admin API
# from outside, set an admin token in the file and run with -e GLB_ADMIN__LISTEN=0.0.0.0:9100
# -p 127.0.0.1:9100:9100. Durable state (drains) is kept in /var/lib/glb: mount a volume there.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY glb ./glb
RUN pip install --no-cache-dir --prefix=/install -c requirements.lock .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home glb \
    && install -d -o glb -g glb -m 0750 /var/lib/glb
COPY --from=build /install /usr/local
COPY deploy/docker/entrypoint.sh /usr/local/bin/glb-entrypoint
ENV GLB_CONFIG=/etc/glb/glb.yaml \
    GLB_DNS__LISTEN=0.0.0.0:5353 \
    GLB_HTTP__LISTEN=0.0.0.0:8080 \
    GLB_ADMIN__LISTEN=127.0.0.1:9100 \
    STATE_DIRECTORY=/var/lib/glb \
    PYTHONUNBUFFERED=1
USER glb
EXPOSE 5353/udp 5353/tcp 8080/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; host, _, port = os.environ['GLB_ADMIN__LISTEN'].rpartition(':'); host = {'0.0.0.0': '127.0.0.1', '[::]': '[::1]'}.get(host, host); urllib.request.urlopen(f'http://{host}:{port}/readyz', timeout=2)"]
ENTRYPOINT ["glb-entrypoint"]
CMD ["serve"]
