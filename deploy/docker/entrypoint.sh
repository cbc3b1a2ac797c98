#!/bin/sh
# The container's entry point: `glb serve` needs a configuration file, and the image has none
# built in. Without one, say where it is expected and how to mount it, instead of starting.
# Any other command (check, explain, --help...) runs as given: docker run IMAGE check -c FILE
set -eu
config="${GLB_CONFIG:-/etc/glb/glb.yaml}"
case " $* " in
  *" -c "* | *" --config "* | *" --config="*) named=yes ;;  # glb itself reports that file
  *) named=no ;;
esac
if [ "${1:-serve}" = serve ] && [ "$named" = no ] && [ ! -f "$config" ]; then
  cat >&2 <<MESSAGE
glb: no configuration file at $config; the image has none built in. Mount yours there:
  docker run -v "\$PWD/glb.yaml:$config:ro" -p 53:5353/udp -p 53:5353/tcp -p 8080:8080 IMAGE
(or mount it elsewhere and set GLB_CONFIG to its path)
MESSAGE
  exit 2
fi
exec glb "$@"
