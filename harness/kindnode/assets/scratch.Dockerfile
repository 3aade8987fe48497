# A control-plane image: one static binary, FROM scratch.
FROM scratch
COPY passwd group /etc/
COPY {{.Binary}} {{.Path}}
USER 0
