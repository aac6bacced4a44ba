# dockmaster's image: the static binary alone (no shell, no libc).
# Build the binary first, then the image (no pull needed: FROM scratch):
#   CGO_ENABLED=0 go build -trimpath -o bin/dockmaster ./cmd/dockmaster
#   docker build -t dockmaster .
# The SQLite store defaults to ./data/dockmaster.db, i.e. /data here: mount a
# volume there to keep it. Talking to Docker hosts over unix sockets needs
# them mounted in; HTTPS to Jenkins or registries needs CA certificates
# mounted at /etc/ssl/certs (scratch has none).
FROM scratch
COPY bin/dockmaster /dockmaster
WORKDIR /
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/dockmaster"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
