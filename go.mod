module sipedge

go 1.26.8
