# glb in a container: DNS on 5353 (UDP and TCP), the HTTP front end on 8080, admin on 9100.
# Map the public DNS port at run time (the process runs unprivileged and cannot bind 53):
#   docker run -v $PWD/glb.yaml:/etc/glb/glb.yaml -p 53:5353/udp -p 53:5353/tcp glb
# The configuration must listen on 0.0.0.0 inside the container (GLB_DNS__LISTEN=0.0.0.0:5353).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY glb ./glb
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home glb
COPY --from=build /install /usr/local
COPY config/example.yaml /etc/glb/glb.yaml
ENV GLB_DNS__LISTEN=0.0.0.0:5353 \
    GLB_HTTP__LISTEN=0.0.0.0:8080 \
    GLB_ADMIN__LISTEN=0.0.0.0:9100 \
    PYTHONUNBUFFERED=1
USER glb
EXPOSE 5353/udp 5353/tcp 8080/tcp 9100/tcp
ENTRYPOINT ["glb"]
CMD ["serve", "-c", "/etc/glb/glb.yaml"]
