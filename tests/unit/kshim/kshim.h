/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Userspace stand-ins for the kernel API that dm-fleece's device-free files
 * use, so tests/unit can build those files unchanged. Every kshim/linux/X.h
 * just includes this file; everything lives here so the shim stays small
 * and one place says how it differs from the kernel:
 *
 *  - spinlock_t and struct mutex are error-checking pthread mutexes, so
 *    threaded tests really contend and taking a lock twice aborts instead
 *    of hanging; "irqsave" flags are unused.
 *  - kmalloc() and friends are malloc() aligned to a cache line (kernel
 *    kmalloc() aligns power-of-two sizes naturally, and some of our structs
 *    are ____cacheline_aligned_in_smp); the gfp flags are ignored. A
 *    0-byte allocation is ZERO_SIZE_PTR, as in the kernel.
 *  - WARN_ON(), WARN_ON_ONCE(), WARN() and list corruption (as with
 *    CONFIG_DEBUG_LIST) print and bump kshim_warn_count, which tests check.
 *    WARN_ON_ONCE() prints once per call site but counts every hit.
 *    BUG_ON() aborts.
 *  - kstrtoull() and kstrtouint() follow lib/kstrtox.c exactly.
 *  - ctype.h is the kernel's (lib/ctype.c): unlike glibc's in the C locale,
 *    isalnum() and friends take Latin-1 letters, and isspace() 0xa0.
 *  - DMERR() and friends print to kshim_log, stderr unless a test sets it.
 */
#ifndef KSHIM_H
#define KSHIM_H

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- types.h ---- */

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef unsigned long long u64;	/* as in the kernel, not uint64_t */
typedef int8_t s8;
typedef int16_t s16;
typedef int32_t s32;
typedef long long s64;
typedef u64 sector_t;
typedef unsigned int gfp_t;
typedef unsigned int fmode_t;
#define U32_MAX ((u32)~0U)
typedef u8 blk_status_t;
/* dev_t: glibc has one. */

typedef struct {
	atomic_int counter;
} atomic_t;

typedef struct {
	atomic_llong counter;
} atomic64_t;

/*
 * Stand-ins for kernel objects that dm-fleece.h embeds in its structs but
 * that no device-free file touches: they only need a size.
 */
struct bio_set {
	void *kshim_opaque;
};

struct xarray {
	void *kshim_opaque;
};

/* linux/llist.h: the types the headers embed; nothing here uses the lists. */
struct llist_node {
	struct llist_node *next;
};

struct llist_head {
	struct llist_node *first;
};

struct work_struct {
	void *kshim_opaque;
};

typedef struct {
	void *kshim_opaque;
} wait_queue_head_t;

typedef struct {
	void *kshim_opaque;
} mempool_t;

struct bio;
struct block_device;
struct dm_dev;
struct workqueue_struct;

/* On-disk integer types (little-endian hosts only, as the tests run). */
typedef uint8_t __u8;
typedef uint32_t __le32;
typedef uint64_t __le64;
#define __packed __attribute__((__packed__))
#define __rcu
#ifndef SECTOR_SHIFT
#define SECTOR_SHIFT 9
#endif

struct rcu_head {
	void *kshim_opaque[2];
};

struct bio_list {
	struct bio *head, *tail;
};

/* ---- compiler.h, kernel.h, bits.h ---- */

#ifndef __always_inline		/* glibc has one */
#define __always_inline inline __attribute__((__always_inline__))
#endif
#define __must_check __attribute__((__warn_unused_result__))
#define __printf(a, b) __attribute__((__format__(printf, a, b)))
#define __maybe_unused __attribute__((__unused__))
#define __aligned(x) __attribute__((__aligned__(x)))
#define __weak __attribute__((__weak__))
#define __init
#define __exit
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define READ_ONCE(x) (*(const volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define BIT(n) (1UL << (n))
#define BIT_ULL(n) (1ULL << (n))

/* Like the kernel's: one evaluation each, and both sides of one type. */
#define kshim_cmp(a, b, op) ({						\
	typeof(a) __a = (a);						\
	typeof(b) __b = (b);						\
	(void)(&__a == &__b);						\
	__a op __b ? __a : __b;						\
})
#define min(a, b) kshim_cmp(a, b, <)
#define max(a, b) kshim_cmp(a, b, >)
#define min_t(t, a, b) kshim_cmp((t)(a), (t)(b), <)
#define max_t(t, a, b) kshim_cmp((t)(a), (t)(b), >)

/* ---- version.h ---- */

#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + \
				 ((c) > 255 ? 255 : (c)))
#define LINUX_VERSION_CODE KERNEL_VERSION(6, 1, 0)

/* ---- bitops.h, find.h: plain, not atomic ---- */

#define BITS_PER_LONG 64
#define BIT_WORD(nr) ((nr) / BITS_PER_LONG)
#define BIT_MASK(nr) (1UL << ((nr) % BITS_PER_LONG))

static inline bool test_bit(unsigned long nr, const unsigned long *addr)
{
	return addr[BIT_WORD(nr)] & BIT_MASK(nr);
}

static inline void set_bit(unsigned long nr, unsigned long *addr)
{
	addr[BIT_WORD(nr)] |= BIT_MASK(nr);
}

static inline void clear_bit(unsigned long nr, unsigned long *addr)
{
	addr[BIT_WORD(nr)] &= ~BIT_MASK(nr);
}

#define __set_bit set_bit
#define __clear_bit clear_bit
#define BITS_TO_LONGS(nr) (((nr) + BITS_PER_LONG - 1) / BITS_PER_LONG)

/* First clear bit in [offset, size), or size. */
static inline unsigned long find_next_zero_bit(const unsigned long *addr,
					       unsigned long size,
					       unsigned long offset)
{
	for (; offset < size; offset++)
		if (!test_bit(offset, addr))
			return offset;
	return size;
}

static inline unsigned long find_first_zero_bit(const unsigned long *addr,
						unsigned long size)
{
	return find_next_zero_bit(addr, size, 0);
}

/* ---- cache.h ---- */

#define KSHIM_CACHELINE 64
#define ____cacheline_aligned __aligned(KSHIM_CACHELINE)
#define ____cacheline_aligned_in_smp ____cacheline_aligned

/* ---- bug.h ---- */

/* All WARNs hit so far, over all threads; tests expect it to stay 0. */
__weak atomic_int kshim_warn_count;

static inline void kshim_warn(const char *file, int line, const char *what,
			      bool print)
{
	atomic_fetch_add(&kshim_warn_count, 1);
	if (print)
		fprintf(stderr, "kshim: WARNING at %s:%d: %s\n", file, line,
			what);
}

#define WARN_ON(cond) ({						\
	bool __c = !!(cond);						\
	if (unlikely(__c))						\
		kshim_warn(__FILE__, __LINE__, #cond, true);		\
	__c;								\
})

#define WARN_ON_ONCE(cond) ({						\
	static atomic_bool __warned;					\
	bool __c = !!(cond);						\
	if (unlikely(__c))						\
		kshim_warn(__FILE__, __LINE__, #cond,			\
			   !atomic_exchange(&__warned, true));		\
	__c;								\
})

#define WARN(cond, ...) ({						\
	bool __c = !!(cond);						\
	if (unlikely(__c)) {						\
		fprintf(stderr, __VA_ARGS__);				\
		kshim_warn(__FILE__, __LINE__, #cond, true);		\
	}								\
	__c;								\
})

#define BUG_ON(cond) do {						\
	if (unlikely(cond)) {						\
		fprintf(stderr, "kshim: BUG at %s:%d: %s\n",		\
			__FILE__, __LINE__, #cond);			\
		abort();						\
	}								\
} while (0)
#define BUG() BUG_ON(1)
#define BUILD_BUG_ON(cond) _Static_assert(!(cond), #cond)

/* ---- slab.h ---- */

#define GFP_KERNEL 0x1u
#define GFP_NOIO 0x2u
#define GFP_NOWAIT 0x4u
#define GFP_ATOMIC 0x8u
#define __GFP_ZERO 0x100u
#define __GFP_NOWARN 0x200u
#define __GFP_RETRY_MAYFAIL 0x400u

/* As in the kernel, a 0-byte allocation faults on any access. */
#define ZERO_SIZE_PTR ((void *)16)
#define ZERO_OR_NULL_PTR(x) \
	((unsigned long)(x) <= (unsigned long)ZERO_SIZE_PTR)

static inline void *kmalloc(size_t size, gfp_t flags)
{
	void *p;

	if (!size)
		return ZERO_SIZE_PTR;
	if (posix_memalign(&p, KSHIM_CACHELINE, size))
		return NULL;
	if (flags & __GFP_ZERO)
		memset(p, 0, size);
	return p;
}

static inline void *kzalloc(size_t size, gfp_t flags)
{
	return kmalloc(size, flags | __GFP_ZERO);
}

static inline void *kmalloc_array(size_t n, size_t size, gfp_t flags)
{
	size_t bytes;

	if (__builtin_mul_overflow(n, size, &bytes))
		return NULL;
	return kmalloc(bytes, flags);
}

static inline void *kcalloc(size_t n, size_t size, gfp_t flags)
{
	return kmalloc_array(n, size, flags | __GFP_ZERO);
}

#define kvmalloc kmalloc
#define kvzalloc kzalloc
#define kvmalloc_array kmalloc_array
#define kvcalloc kcalloc

static inline void kfree(const void *p)
{
	if (!ZERO_OR_NULL_PTR(p))
		free((void *)p);
}

#define kvfree kfree

static inline char *kstrdup(const char *s, gfp_t flags)
{
	size_t n;
	char *p;

	if (!s)
		return NULL;
	n = strlen(s) + 1;
	p = kmalloc(n, flags);
	if (p)
		memcpy(p, s, n);
	return p;
}

/* ---- log2.h ---- */

static inline bool is_power_of_2(unsigned long n)
{
	return n != 0 && (n & (n - 1)) == 0;
}

/* Like the kernel's, undefined for 0. */
#define ilog2(n) ((int)(63 - __builtin_clzll((unsigned long long)(n))))

static inline unsigned long roundup_pow_of_two(unsigned long n)
{
	return n <= 1 ? 1 : 1UL << (64 - __builtin_clzl(n - 1));
}

static inline unsigned long rounddown_pow_of_two(unsigned long n)
{
	return 1UL << ilog2(n);
}

/* ---- hash.h ---- */

#define GOLDEN_RATIO_64 0x61C8864680B583EBull

/* As the kernel's: bits must be 1..64. */
static inline u32 hash_64(u64 val, unsigned int bits)
{
	return val * GOLDEN_RATIO_64 >> (64 - bits);
}

#define GOLDEN_RATIO_32 0x61C88647u

/* As the kernel's: bits must be 1..32. */
static inline u32 hash_32(u32 val, unsigned int bits)
{
	return (u32)(val * GOLDEN_RATIO_32) >> (32 - bits);
}

/* ---- list.h ---- */

struct list_head {
	struct list_head *next, *prev;
};

#define LIST_POISON1 ((struct list_head *)0x100)
#define LIST_POISON2 ((struct list_head *)0x122)

#define LIST_HEAD_INIT(name) { &(name), &(name) }
#define LIST_HEAD(name) struct list_head name = LIST_HEAD_INIT(name)

static inline void INIT_LIST_HEAD(struct list_head *list)
{
	list->next = list;
	list->prev = list;
}

/* Insert @entry between the adjacent @prev and @next. */
static inline void __list_add(struct list_head *entry,
			      struct list_head *prev, struct list_head *next)
{
	if (next->prev != prev || prev->next != next ||
	    entry == prev || entry == next) {
		kshim_warn(__FILE__, __LINE__, "list_add corruption", true);
		return;
	}
	next->prev = entry;
	entry->next = next;
	entry->prev = prev;
	prev->next = entry;
}

static inline void list_add(struct list_head *entry, struct list_head *head)
{
	__list_add(entry, head, head->next);
}

static inline void list_add_tail(struct list_head *entry,
				 struct list_head *head)
{
	__list_add(entry, head->prev, head);
}

/* Unlink @entry, leaving its own pointers alone; false if corrupt. */
static inline bool __list_del_entry(struct list_head *entry)
{
	struct list_head *prev = entry->prev, *next = entry->next;

	if (next == LIST_POISON1 || prev == LIST_POISON2 ||
	    prev->next != entry || next->prev != entry) {
		kshim_warn(__FILE__, __LINE__, "list_del corruption", true);
		return false;
	}
	next->prev = prev;
	prev->next = next;
	return true;
}

static inline void list_del(struct list_head *entry)
{
	if (__list_del_entry(entry)) {
		entry->next = LIST_POISON1;
		entry->prev = LIST_POISON2;
	}
}

static inline void list_del_init(struct list_head *entry)
{
	if (__list_del_entry(entry))
		INIT_LIST_HEAD(entry);
}

static inline void list_move(struct list_head *entry, struct list_head *head)
{
	if (__list_del_entry(entry))
		list_add(entry, head);
}

static inline void list_move_tail(struct list_head *entry,
				  struct list_head *head)
{
	if (__list_del_entry(entry))
		list_add_tail(entry, head);
}

/* @new takes @old's place in its list; @old is left empty. */
static inline void list_replace_init(struct list_head *old,
				     struct list_head *new)
{
	new->next = old->next;
	new->next->prev = new;
	new->prev = old->prev;
	new->prev->next = new;
	INIT_LIST_HEAD(old);
}

static inline bool list_empty(const struct list_head *head)
{
	return READ_ONCE(head->next) == head;
}

static inline bool list_is_singular(const struct list_head *head)
{
	return !list_empty(head) && head->next == head->prev;
}

/* Move all of @list to the front of @head and empty @list. */
static inline void list_splice_init(struct list_head *list,
				    struct list_head *head)
{
	struct list_head *first = list->next, *last = list->prev;

	if (list_empty(list))
		return;
	first->prev = head;
	last->next = head->next;
	head->next->prev = last;
	head->next = first;
	INIT_LIST_HEAD(list);
}

#define list_entry(ptr, type, member) container_of(ptr, type, member)
#define list_first_entry(head, type, member) \
	list_entry((head)->next, type, member)
#define list_last_entry(head, type, member) \
	list_entry((head)->prev, type, member)
#define list_first_entry_or_null(head, type, member) \
	(list_empty(head) ? NULL : list_first_entry(head, type, member))
#define list_next_entry(pos, member) \
	list_entry((pos)->member.next, typeof(*(pos)), member)

#define list_for_each(pos, head) \
	for (pos = (head)->next; pos != (head); pos = pos->next)
#define list_for_each_safe(pos, n, head) \
	for (pos = (head)->next, n = pos->next; pos != (head); \
	     pos = n, n = pos->next)
#define list_for_each_entry(pos, head, member)				\
	for (pos = list_first_entry(head, typeof(*pos), member);	\
	     &pos->member != (head);					\
	     pos = list_next_entry(pos, member))
#define list_for_each_entry_safe(pos, n, head, member)			\
	for (pos = list_first_entry(head, typeof(*pos), member),	\
	     n = list_next_entry(pos, member);				\
	     &pos->member != (head);					\
	     pos = n, n = list_next_entry(n, member))

/* ---- spinlock.h, mutex.h ---- */

typedef struct {
	pthread_mutex_t m;
} spinlock_t;

/* Error-checking, so recursion or a stray unlock stops the test at once. */
static inline void kshim_mutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
}

static inline void kshim_mutex_op(int err, const char *what)
{
	if (err) {
		fprintf(stderr, "kshim: BUG: %s: %s\n", what, strerror(err));
		abort();
	}
}

/* Not checked: the mutexes abort on misuse instead. */
#define lockdep_assert_held(l) do { (void)(l); } while (0)

static inline void spin_lock_init(spinlock_t *lock)
{
	kshim_mutex_init(&lock->m);
}

static inline void spin_lock(spinlock_t *lock)
{
	kshim_mutex_op(pthread_mutex_lock(&lock->m), "spin_lock");
}

static inline void spin_unlock(spinlock_t *lock)
{
	kshim_mutex_op(pthread_mutex_unlock(&lock->m), "spin_unlock");
}

#define spin_lock_irq spin_lock
#define spin_unlock_irq spin_unlock
#define spin_lock_irqsave(lock, flags) \
	do { (flags) = 0; spin_lock(lock); } while (0)
#define spin_unlock_irqrestore(lock, flags) \
	do { (void)(flags); spin_unlock(lock); } while (0)

struct mutex {
	pthread_mutex_t m;
};

static inline void mutex_init(struct mutex *lock)
{
	kshim_mutex_init(&lock->m);
}

static inline void mutex_lock(struct mutex *lock)
{
	kshim_mutex_op(pthread_mutex_lock(&lock->m), "mutex_lock");
}

static inline void mutex_unlock(struct mutex *lock)
{
	kshim_mutex_op(pthread_mutex_unlock(&lock->m), "mutex_unlock");
}

static inline void mutex_destroy(struct mutex *lock)
{
	pthread_mutex_destroy(&lock->m);
}

/* ---- kref.h ---- */

struct kref {
	atomic_uint refcount;
};

static inline void kref_init(struct kref *kref)
{
	atomic_init(&kref->refcount, 1);
}

static inline void kref_get(struct kref *kref)
{
	atomic_fetch_add(&kref->refcount, 1);
}

static inline int kref_put(struct kref *kref,
			   void (*release)(struct kref *kref))
{
	if (atomic_fetch_sub(&kref->refcount, 1) == 1) {
		release(kref);
		return 1;
	}
	return 0;
}

/* ---- kernel.h: kstrto*() as in lib/kstrtox.c ---- */

#define KSHIM_KSTRTOX_OVERFLOW BIT(31)

static inline const char *kshim_fixup_radix(const char *s, unsigned int *base)
{
	if (*base == 0) {
		if (s[0] == '0') {
			if ((s[1] | 0x20) == 'x' &&
			    ((s[2] >= '0' && s[2] <= '9') ||
			     ((s[2] | 0x20) >= 'a' && (s[2] | 0x20) <= 'f')))
				*base = 16;
			else
				*base = 8;
		} else {
			*base = 10;
		}
	}
	if (*base == 16 && s[0] == '0' && (s[1] | 0x20) == 'x')
		s += 2;
	return s;
}

/* Digits consumed, or-ed with KSHIM_KSTRTOX_OVERFLOW on overflow. */
static inline unsigned int kshim_parse_integer(const char *s,
					       unsigned int base,
					       unsigned long long *p)
{
	unsigned long long res = 0;
	unsigned int rv = 0;

	for (;; s++) {
		unsigned int c = (unsigned char)*s, lc = c | 0x20, val;

		if (c >= '0' && c <= '9')
			val = c - '0';
		else if (lc >= 'a' && lc <= 'f')
			val = lc - 'a' + 10;
		else
			break;
		if (val >= base)
			break;
		if (res > (ULLONG_MAX - val) / base)
			rv |= KSHIM_KSTRTOX_OVERFLOW;
		res = res * base + val;
		rv++;
	}
	*p = res;
	return rv;
}

static inline int kstrtoull(const char *s, unsigned int base,
			    unsigned long long *res)
{
	unsigned long long r;
	unsigned int rv;

	if (s[0] == '+')
		s++;
	s = kshim_fixup_radix(s, &base);
	rv = kshim_parse_integer(s, base, &r);
	if (rv & KSHIM_KSTRTOX_OVERFLOW)
		return -ERANGE;
	if (rv == 0)
		return -EINVAL;
	s += rv;
	if (*s == '\n')
		s++;
	if (*s)
		return -EINVAL;
	*res = r;
	return 0;
}

static inline int kstrtouint(const char *s, unsigned int base,
			     unsigned int *res)
{
	unsigned long long tmp;
	int rv;

	rv = kstrtoull(s, base, &tmp);
	if (rv < 0)
		return rv;
	if (tmp != (unsigned int)tmp)
		return -ERANGE;
	*res = tmp;
	return 0;
}

#define kstrtou64 kstrtoull

#define pr_err(...) fprintf(stderr, __VA_ARGS__)
#define pr_warn(...) fprintf(stderr, __VA_ARGS__)
#define pr_info(...) fprintf(stderr, __VA_ARGS__)
#define pr_debug(...) do { } while (0)

/* ---- ctype.h: lib/ctype.c's table, so bytes >= 0x80 behave as there ---- */

#define _U	0x01	/* upper */
#define _L	0x02	/* lower */
#define _D	0x04	/* digit */
#define _C	0x08	/* cntrl */
#define _P	0x10	/* punct */
#define _S	0x20	/* white space (space/lf/tab) */
#define _X	0x40	/* hex digit */
#define _SP	0x80	/* hard space (0x20) */

__weak const unsigned char kshim_ctype[256] = {
_C, _C, _C, _C, _C, _C, _C, _C,					/* 0-7 */
_C, _C | _S, _C | _S, _C | _S, _C | _S, _C | _S, _C, _C,	/* 8-15 */
_C, _C, _C, _C, _C, _C, _C, _C,					/* 16-23 */
_C, _C, _C, _C, _C, _C, _C, _C,					/* 24-31 */
_S | _SP, _P, _P, _P, _P, _P, _P, _P,				/* 32-39 */
_P, _P, _P, _P, _P, _P, _P, _P,					/* 40-47 */
_D, _D, _D, _D, _D, _D, _D, _D,					/* 48-55 */
_D, _D, _P, _P, _P, _P, _P, _P,					/* 56-63 */
_P, _U | _X, _U | _X, _U | _X, _U | _X, _U | _X, _U | _X, _U,	/* 64-71 */
_U, _U, _U, _U, _U, _U, _U, _U,					/* 72-79 */
_U, _U, _U, _U, _U, _U, _U, _U,					/* 80-87 */
_U, _U, _U, _P, _P, _P, _P, _P,					/* 88-95 */
_P, _L | _X, _L | _X, _L | _X, _L | _X, _L | _X, _L | _X, _L,	/* 96-103 */
_L, _L, _L, _L, _L, _L, _L, _L,					/* 104-111 */
_L, _L, _L, _L, _L, _L, _L, _L,					/* 112-119 */
_L, _L, _L, _P, _P, _P, _P, _C,					/* 120-127 */
0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,			/* 128-143 */
0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,			/* 144-159 */
_S | _SP, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P,	/* 160-175 */
_P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P,	/* 176-191 */
_U, _U, _U, _U, _U, _U, _U, _U, _U, _U, _U, _U, _U, _U, _U, _U,	/* 192-207 */
_U, _U, _U, _U, _U, _U, _U, _P, _U, _U, _U, _U, _U, _U, _U, _L,	/* 208-223 */
_L, _L, _L, _L, _L, _L, _L, _L, _L, _L, _L, _L, _L, _L, _L, _L,	/* 224-239 */
_L, _L, _L, _L, _L, _L, _L, _P, _L, _L, _L, _L, _L, _L, _L, _L,	/* 240-255 */
};

/* glibc's <ctype.h> may already be in: the kernel's win. */
#undef isalnum
#undef isalpha
#undef iscntrl
#undef isdigit
#undef isgraph
#undef islower
#undef isprint
#undef ispunct
#undef isspace
#undef isupper
#undef isxdigit
#undef isascii
#define kshim_ismask(x) (kshim_ctype[(int)(unsigned char)(x)])
#define isalnum(c)	((kshim_ismask(c) & (_U | _L | _D)) != 0)
#define isalpha(c)	((kshim_ismask(c) & (_U | _L)) != 0)
#define iscntrl(c)	((kshim_ismask(c) & (_C)) != 0)
#define isdigit(c)	((kshim_ismask(c) & (_D)) != 0)
#define isgraph(c)	((kshim_ismask(c) & (_P | _U | _L | _D)) != 0)
#define islower(c)	((kshim_ismask(c) & (_L)) != 0)
#define isprint(c)	((kshim_ismask(c) & (_P | _U | _L | _D | _SP)) != 0)
#define ispunct(c)	((kshim_ismask(c) & (_P)) != 0)
#define isspace(c)	((kshim_ismask(c) & (_S)) != 0)
#define isupper(c)	((kshim_ismask(c) & (_U)) != 0)
#define isxdigit(c)	((kshim_ismask(c) & (_D | _X)) != 0)
#define isascii(c)	(((unsigned char)(c)) <= 0x7f)

/* ---- module.h ---- */

#define THIS_MODULE NULL
#define module_init(fn)
#define module_exit(fn)
#define MODULE_DESCRIPTION(s)
#define MODULE_AUTHOR(s)
#define MODULE_LICENSE(s)

/* ---- device-mapper.h ---- */

/* Where DMERR() and friends print: stderr unless a test points it away. */
__weak FILE *kshim_log;

#define DM_NAME "device-mapper"
#define DMERR(fmt, ...) \
	fprintf(kshim_log ? kshim_log : stderr, \
		DM_NAME ": " DM_MSG_PREFIX ": " fmt "\n", ##__VA_ARGS__)
#define DMWARN DMERR
#define DMINFO DMERR

struct target_type;

/* Only what the device-free files touch. */
struct dm_target {
	const char *error;
	void *private;
};

struct dm_arg_set {
	unsigned int argc;
	char **argv;
};

struct dm_arg {
	unsigned int min;
	unsigned int max;
	char *error;
};

static inline const char *dm_shift_arg(struct dm_arg_set *as)
{
	char *r;

	if (as->argc) {
		as->argc--;
		r = *as->argv;
		as->argv++;
		return r;
	}
	return NULL;
}

#endif /* KSHIM_H */
