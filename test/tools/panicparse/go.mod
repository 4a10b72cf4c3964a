module goroscope.test/panicparse

go 1.23.0

require github.com/maruel/panicparse/v2 v2.5.0
