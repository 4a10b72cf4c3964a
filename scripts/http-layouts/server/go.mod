module goroscope/scripts/http-layouts/server

go 1.19
