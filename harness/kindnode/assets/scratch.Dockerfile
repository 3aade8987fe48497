# A control-plane image: one static binary, FROM scratch.
FROM scratch
COPY passwd group /etc/
COPY {{.Binary}} {{.Path}}
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin
USER 0
ENTRYPOINT ["{{.Path}}"]
