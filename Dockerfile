# One image for both subcommands: `ftp-operator manager` and `ftp-operator ftpd`.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY ftpd/ ftpd/
COPY internal/ internal/
# IMAGE is the reference this image is pushed as; the manager runs daemons from it by default.
ARG IMAGE=ghcr.io/kubeftp/ftp-operator:dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.defaultDaemonImage=${IMAGE}" -o /out/ftp-operator ./cmd

# Static, non-root, no shell: the daemon needs no capabilities and no writable root filesystem.
FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/ftp-operator /ftp-operator
USER 65532:65532
ENTRYPOINT ["/ftp-operator"]
