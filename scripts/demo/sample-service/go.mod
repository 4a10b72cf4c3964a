module sampleservice

go 1.19
