module goroscope.dev/deploy/helm-render

go 1.19
