/*
 * A 32-bit static program with no C library: opens argv[1] with the i386 open system call
 * (int 0x80, number 5), reads it and writes what it read to stdout, then exits 0; exits 1 with
 * nothing written when the open or the read fails. The walk-around scenario's "32-bit static
 * binary" (tests/src/bin/walkaround.rs carries it, built by tests/build.rs with clang-19).
 */
static long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(n), "b"(a), "c"(b), "d"(c) : "memory");
	return r;
}

__attribute__((used)) void main32(long *sp)
{
	char buf[4096];
	long total = 0;
	char **argv = (char **)(sp + 1);
	long fd = sp[0] > 1 ? sys3(5, (long)argv[1], 0, 0) : -1;
	if (fd < 0)
		sys3(1, 1, 0, 0);
	for (;;) {
		long n = sys3(3, fd, (long)buf, sizeof buf);
		if (n < 0)
			sys3(1, 1, 0, 0);
		if (n == 0)
			break;
		sys3(4, 1, (long)buf, n);
		total += n;
	}
	sys3(1, 0, 0, 0);
}

/* The kernel enters with the stack holding argc, then argv. */
__attribute__((naked)) void _start(void)
{
	__asm__("mov %esp, %eax\n\tpush %eax\n\tcall main32\n\thlt");
}
