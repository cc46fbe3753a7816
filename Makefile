# The README's two commands, for those who type make: the scripts do all the work.
.PHONY: demo test
demo:
	./demo.sh
test:
	./test.sh
