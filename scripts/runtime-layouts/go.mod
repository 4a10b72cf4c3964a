module goroscope/scripts/runtime-layouts

go 1.21
