/* xmem.c: the no-hugepage mode.  DPDK 22.11 has no secondary processes
 * without hugepages (a --no-huge secondary finds no hugepage_data and EAL
 * init fails), so here the manager keeps the objects NFs share (packet
 * pool, rings, exchange, RCU, flow tables) in a shared-memory region of
 * its own, registered with EAL as an external malloc heap, and every NF
 * runs an EAL instance of its own (--no-huge --no-shconf) and maps the
 * same region at the same address.  The region is a memfd (or an unnamed
 * O_TMPFILE file in a directory the user names): it has no path anyone
 * could open, and reaches an NF only as a descriptor over the NF door.
 * Its first page is a directory of where the objects lie, in place of
 * DPDK's by-name lookups that only work inside one EAL instance. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include "onvm_core.h"

#define XMEM_MAGIC 0x6f6e766d786d656dull   /* "onvmxmem" */
#define XMEM_PAGE 4096
#define XMEM_HUGE (2u << 20)               /* a PMD's reach on x86-64 and arm64 (4 KiB granule) */
#define XMEM_HEAP "onvm_xmem"
/* Where the region goes: far from DPDK's own reservations (from 4 GiB up),
 * the program, its heap and the kernel's mmap area (near 0x7f...), so the
 * same range is free in every NF.  The manager tries a few. */
#define XMEM_BASE 0x300000000000ull
#define XMEM_STEP 0x10000000000ull         /* 1 TiB */
#define XMEM_TRIES 16

struct xmem_dir {
	uint64_t magic;
	uint64_t base, len;
	int32_t meta_offset;
	struct rte_mempool *pool;
	struct onvm_xchg *xchg;
	struct rte_rcu_qsbr *rcu;
	struct rte_ring *nf_rx[ONVM_MAX_NFS];
	struct rte_ring *port_tx[ONVM_MAX_PORTS];
	struct rte_ring *tap[ONVM_MAX_TAPS];
};

int onvm_socket = SOCKET_ID_ANY;   /* where shared objects go; set in onvm_mgr_init */

static struct {
	uint64_t want;          /* bytes asked for by onvm_mgr_use_xmem; 0: hugepages */
	char dir[256];          /* "" for a memfd */
	int fd;
	struct xmem_dir *d;
} xm = {.fd = -1};

int onvm_mgr_use_xmem(uint64_t bytes, const char *dir)
{
	if (bytes < (16u << 20)) {
		onvm_set_error("the shared memory region must be at least 16 MB, got %llu bytes",
			       (unsigned long long)bytes);
		return -EINVAL;
	}
	if (dir && strlen(dir) >= sizeof(xm.dir)) {
		onvm_set_error("shared memory directory name too long");
		return -EINVAL;
	}
	xm.want = (bytes + XMEM_PAGE - 1) & ~(uint64_t)(XMEM_PAGE - 1);
	snprintf(xm.dir, sizeof(xm.dir), "%s", dir ? dir : "");
	return 0;
}

int onvm_mgr_xmem_fd(void)
{
	return xm.fd;
}

/* The region's range: an NF's span of packet memory (the pool's own
 * chunk list is in the manager's private EAL memory, see xmem_attach). */
void xmem_range(uintptr_t *base, uintptr_t *end)
{
	*base = (uintptr_t)xm.d;
	*end = (uintptr_t)xm.d + xm.want;
}

bool xmem_active(void)
{
	return xm.d != NULL;
}

/* Every page now, so a full tmpfs or memory limit is an error here and not
 * a SIGBUS in the data path later. */
static int reserve(int fd, uint64_t len)
{
	if (ftruncate(fd, (off_t)len) < 0)
		return -errno;
	int r;
	do
		r = posix_fallocate(fd, 0, (off_t)len);
	while (r == EINTR);
	return -r;
}

static int too_small(int err)
{
	unsigned long long mb = (unsigned long long)(xm.want >> 20);
	if (xm.dir[0])
		onvm_set_error("cannot reserve %llu MB of shared memory in %s (%s): the no-hugepage mode needs that "
			       "much free there; in Docker run the container with --shm-size=%llum or more, or give "
			       "the manager a smaller hugepage_mb and fewer mbufs",
			       mb, xm.dir, strerror(-err), mb + 64);
	else
		onvm_set_error("cannot reserve %llu MB of shared memory (%s): the no-hugepage mode needs that much; "
			       "raise the memory limit (Docker: --memory; --shm-size=%llum if shared memory is "
			       "put in /dev/shm) or give the manager a smaller hugepage_mb and fewer mbufs",
			       mb, strerror(-err), mb + 64);
	return err;
}

/* ONVM_XMEM_4K=1: the region as it was before 2 MiB pages (4 KiB pages, a
 * heap of 4 KiB pages), for the benchmark's comparison (bench_nohuge.py
 * --with-4k) and for a kernel where THP misbehaves. */
static bool keep_4k(void)
{
	const char *e = getenv("ONVM_XMEM_4K");
	return e && *e && strcmp(e, "0") != 0;
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25   /* Linux 6.1; older headers lack the name */
#endif

/* The region in 2 MiB pages where the kernel lets us, best effort.  In
 * 4 KiB pages every packet an NF touches costs a TLB miss once the pool
 * outgrows the TLB's reach (a few MB; 16k packets are 38 MB).  These are
 * tmpfs's transparent huge pages, not hugetlbfs: no reservation, no root.
 * MADV_HUGEPAGE suffices where shmem_enabled is advise (for pages faulted
 * later); MADV_COLLAPSE (Linux 6.1) rebuilds what is there in place,
 * whatever shmem_enabled says short of "deny" (so also under the default
 * "never"), and maps it by PMD here.  NFs map the same folios by PMD at
 * their MAP_POPULATE (the region and the file agree on 2 MiB alignment:
 * XMEM_BASE, offset 0).  From the top down, 2 MiB at a time: DPDK's heap
 * hands out memory from the top, so the packet pool and rings are there,
 * and a machine short of free 2 MiB blocks (fragmented, or its RAM held as
 * reserved hugetlb pages) gives them what it has.  What stays in 4 KiB
 * pages (a kernel before 6.1, "deny", no free 2 MiB) works as before, only
 * slower.  No effect on who may map it: same file, same seals. */
static void huge_pages(void *va, uint64_t len)
{
	uint64_t huge = len & ~(uint64_t)(XMEM_HUGE - 1);
	if (huge == 0 || keep_4k())
		return;
	(void)madvise(va, huge, MADV_HUGEPAGE);
	unsigned refused = 0;
	for (uint64_t off = huge; off > 0 && refused < 8; off -= XMEM_HUGE) {
		if (madvise((char *)va + off - XMEM_HUGE, XMEM_HUGE, MADV_COLLAPSE) == 0)
			refused = 0;
		else if (errno == EINVAL || errno == EPERM)
			return;       /* this kernel cannot: no point asking for the rest */
		else
			refused++;    /* ENOMEM, EAGAIN: no 2 MiB block free just now */
	}
}

/* Manager, after rte_eal_init: the region, mapped, registered as a heap;
 * onvm_socket then names it. */
int xmem_create(void)
{
	if (xm.want == 0) {
		onvm_socket = (int)rte_socket_id();
		return 0;
	}
	int fd = xm.dir[0] ? open(xm.dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)
			   : memfd_create("onvm-shared", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		onvm_set_error("cannot make the shared memory region (%s%s): %s", xm.dir[0] ? "a file in " : "memfd",
			       xm.dir, strerror(errno));
		return -errno;
	}
	int r = reserve(fd, xm.want);
	if (r < 0) {
		close(fd);
		return too_small(r);
	}
	/* Its size for good: an NF holds the descriptor too, and a region cut
	 * short would be a SIGBUS in the manager.  (A file in xm.dir cannot be
	 * sealed; there only its owner's processes hold it.) */
	if (!xm.dir[0] && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		onvm_set_error("cannot seal the shared memory region: %s", strerror(errno));
		close(fd);
		return -errno;
	}
	void *va = MAP_FAILED;
	for (unsigned i = 0; i < XMEM_TRIES && va == MAP_FAILED; i++) {
		void *want = (void *)(uintptr_t)(XMEM_BASE + i * XMEM_STEP);
		va = mmap(want, xm.want, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE | MAP_POPULATE, fd, 0);
		if (va != MAP_FAILED && va != want) { /* a kernel before 4.17 takes the address as a hint */
			munmap(va, xm.want);
			va = MAP_FAILED;
		}
	}
	if (va == MAP_FAILED) {
		onvm_set_error("cannot map the shared memory region: %s", strerror(errno));
		close(fd);
		return -ENOMEM;
	}
	huge_pages(va, xm.want);
	/* The heap's page size is where the packet pool will not lay an mbuf
	 * across a boundary (for IOVA contiguity, which nothing here needs: the
	 * region has no IOVA).  At 4 KiB that is one 2.3 KiB mbuf per page with
	 * every header at the same offset in its page, all competing for the
	 * same few cache sets; at 2 MiB they lie back to back, as in hugepages.
	 * The directory then has the first 2 MiB to itself. */
	uint64_t pg = keep_4k() ? XMEM_PAGE : XMEM_HUGE;
	uint64_t pages = (xm.want - pg) / pg;       /* all but the directory */
	if (rte_malloc_heap_create(XMEM_HEAP) < 0 ||
	    rte_malloc_heap_memory_add(XMEM_HEAP, (char *)va + pg, pages * pg, NULL, (unsigned)pages, pg) < 0) {
		onvm_set_error("DPDK refused the shared memory region as a heap: %s", rte_strerror(rte_errno));
		munmap(va, xm.want);
		close(fd);
		return -ENOMEM;
	}
	onvm_socket = rte_malloc_heap_get_socket(XMEM_HEAP);
	xm.fd = fd;
	xm.d = va;
	xm.d->base = (uint64_t)(uintptr_t)va;
	xm.d->len = xm.want;
	return 0;
}

/* How much of the region this process maps in 2 MiB pages (huge_pages),
 * from /proc/self/smaps: what the manager's log says of the mode's speed. */
uint64_t onvm_mgr_xmem_huge_bytes(void)
{
	if (xm.d == NULL)
		return 0;
	FILE *f = fopen("/proc/self/smaps", "re");
	if (f == NULL)
		return 0;
	char line[4400];   /* a header line: addresses, flags and a path of up to PATH_MAX */
	unsigned long long start, end, kb, got = 0;
	bool ours = false;
	while (fgets(line, sizeof(line), f)) {
		int n = 0;
		if (sscanf(line, "%llx-%llx %n", &start, &end, &n) == 2 && n > 0)
			ours = start == (unsigned long long)(uintptr_t)xm.d;   /* a mapping's first line */
		else if (ours && sscanf(line, "ShmemPmdMapped: %llu kB", &kb) == 1)
			got += kb << 10;
	}
	fclose(f);
	return got;
}

/* Manager, once every shared object exists: what NFs will look up. */
void xmem_publish(struct rte_mempool *pool, struct rte_ring *const *taps)
{
	struct xmem_dir *d = xm.d;
	if (d == NULL)
		return;
	d->meta_offset = onvm_meta_offset;
	d->pool = pool;
	d->xchg = onvm_dp.xchg;
	d->rcu = onvm_dp.rcu;
	memcpy(d->nf_rx, onvm_dp.nf_rx, sizeof(d->nf_rx));
	memcpy(d->port_tx, onvm_dp.port_tx, sizeof(d->port_tx));
	memcpy(d->tap, taps, sizeof(d->tap));
	__atomic_store_n(&d->magic, XMEM_MAGIC, __ATOMIC_RELEASE);
}

void xmem_destroy(void)
{
	if (xm.d) {
		/* The heap goes with EAL (rte_eal_cleanup); only our mapping here. */
		munmap(xm.d, xm.want);
		xm.d = NULL;
	}
	if (xm.fd >= 0)
		close(xm.fd);
	xm.fd = -1;
}

/* An NF, after its own rte_eal_init: map the manager's region from fd at
 * the manager's address and fill the data path's pointers from the
 * directory.  taps: where capture.c's rings go.  What DPDK allocates with
 * no socket named (a mempool's chunk headers) is in the manager's own EAL
 * memory, not here: an NF uses only what the directory names, and the
 * get/put and enqueue/dequeue paths those reach. */
int xmem_attach(int fd, struct rte_mempool **pool, struct rte_ring **taps)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size < XMEM_PAGE) {
		onvm_set_error("the manager's shared memory descriptor is not a region");
		return -EINVAL;
	}
	struct xmem_dir *head = mmap(NULL, XMEM_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (head == MAP_FAILED) {
		onvm_set_error("cannot read the manager's shared memory: %s", strerror(errno));
		return -errno;
	}
	uint64_t magic = __atomic_load_n(&head->magic, __ATOMIC_ACQUIRE), base = head->base, len = head->len;
	munmap(head, XMEM_PAGE);
	if (magic != XMEM_MAGIC || len != (uint64_t)st.st_size) {
		onvm_set_error("the manager's shared memory is not ready (or of another onvm version)");
		return -EINVAL;
	}
	void *va = mmap((void *)(uintptr_t)base, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE | MAP_POPULATE, fd, 0);
	if (va != MAP_FAILED && va != (void *)(uintptr_t)base) {
		munmap(va, len);
		va = MAP_FAILED;
		errno = EEXIST;
	}
	if (va == MAP_FAILED) {
		onvm_set_error("cannot map the manager's shared memory at %#llx: %s (something else of this process "
			       "is there)", (unsigned long long)base, strerror(errno));
		return -errno;
	}
	struct xmem_dir *d = va;
	onvm_meta_offset = d->meta_offset;
	*pool = d->pool;
	onvm_dp.xchg = d->xchg;
	onvm_dp.rcu = d->rcu;
	memcpy(onvm_dp.nf_rx, d->nf_rx, sizeof(onvm_dp.nf_rx));
	memcpy(onvm_dp.port_tx, d->port_tx, sizeof(onvm_dp.port_tx));
	memcpy(taps, d->tap, sizeof(d->tap));
	xm.d = d;
	xm.want = len;
	return 0;
}
